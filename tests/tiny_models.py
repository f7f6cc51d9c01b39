"""Tiny random decoders of every supported family, built locally (no download)."""
import torch
import transformers as tf

VOCAB = 96
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_attention_heads=4,
              max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def tiny_config(family: str, n_layers: int = 6):
    if family in ("llama", "mistral", "phi3", "olmo", "olmo2"):
        cls = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "phi3": tf.Phi3Config,
               "olmo": tf.OlmoConfig, "olmo2": tf.Olmo2Config}[family]
        extra = {"num_key_value_heads": 2} if family != "olmo" else {}
        if family == "mistral":
            extra["sliding_window"] = 8
        return cls(**COMMON, num_hidden_layers=n_layers, **extra)
    if family in ("qwen2", "qwen3"):
        cls = tf.Qwen2Config if family == "qwen2" else tf.Qwen3Config
        extra = {"head_dim": 8} if family == "qwen3" else {}
        # sliding window on the upper layers: makes layer_types non-uniform, so slicing it matters
        return cls(**COMMON, num_hidden_layers=n_layers, num_key_value_heads=2, use_sliding_window=True,
                   sliding_window=8, max_window_layers=n_layers // 2, **extra)
    if family == "gemma":
        return tf.GemmaConfig(**COMMON, num_hidden_layers=n_layers, num_key_value_heads=2, head_dim=8)
    if family == "gemma2":
        return tf.Gemma2Config(**COMMON, num_hidden_layers=n_layers, num_key_value_heads=2, head_dim=8,
                               sliding_window=8)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(**COMMON, num_hidden_layers=n_layers)
    if family == "opt":
        return tf.OPTConfig(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_attention_heads=4,
                            word_embed_proj_dim=32, num_hidden_layers=n_layers, max_position_embeddings=128,
                            pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=n_layers, n_head=4, n_positions=128,
                             bos_token_id=1, eos_token_id=2)
    raise KeyError(family)


def tiny_model(family: str, n_layers: int = 6, seed: int = 0):
    torch.manual_seed(seed)
    config = tiny_config(family, n_layers)
    config._attn_implementation = "eager"
    model = tf.AutoModelForCausalLM.from_config(config)
    # random init leaves some residual paths near zero; larger weights make every layer matter
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()
