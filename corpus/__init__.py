"""Loading, cleaning, folding and chunking Chinese documents.

Every chunk keeps exact character offsets into the document's original text, so answers can
always cite and highlight what the user actually saved.
"""
