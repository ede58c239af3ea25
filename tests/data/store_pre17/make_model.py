"""Save the tiny random Llama that built this fixture: tests/conftest.py's tiny_model_dir,
but initialised with a 10x wider spread (initializer_range 0.2), so that its answers
depend on its weights enough for 50% magnitude pruning to change about a quarter of the
BBQ answers (at the default 0.02 it changed 2 of 45, and no accuracy).

    python make_model.py OUT_DIR
"""

import sys

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from compsafe.models.embedded import embedded_model_dir

out = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
config = LlamaConfig(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=512,
    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    pad_token_id=tokenizer.pad_token_id, initializer_range=0.2,
)
torch.manual_seed(0)
LlamaForCausalLM(config).eval().save_pretrained(out)
tokenizer.save_pretrained(out)
