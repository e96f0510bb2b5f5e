"""Special token ids shared by every tokenizer, model, decoder and reward in seqlab."""

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
#: the first id of a regular (non-special) token
FIRST_REGULAR_ID = len(SPECIAL_TOKENS)
