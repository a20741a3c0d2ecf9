"""Hardware and model cards for `deft-jax aot` (deft_jax/train/aot.py), as data.

A topology: its platform ("cuda" | "tpu"), PJRT topology name, device count, memory per device,
default mesh and global batch, get_topology_desc keyword arguments (options) and the XLA options
of its compiler (compiler_options). A model: the config.json values its Hugging Face model card
publishes (nothing is downloaded). Add a card here to plan for new hardware or a new LLM.
"""

GiB = 1 << 30

# NVIDIA H100 SXM 80GB as the XLA GPU compiler sees it (GpuTargetConfigProto, text format).
H100_TARGET_CONFIG = """
gpu_device_info {
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: 84929347584
  shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 }
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}
runtime_version { major: 12 minor: 8 }
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 7 }
device_description_str: "NVIDIA H100 80GB HBM3"
"""


TOPOLOGIES = {
    "8xh100": dict(
        platform="cuda", name="8xh100", devices=8, memory_bytes=80 * GiB, mesh={"data": 1, "fsdp": 8, "tensor": 1},
        batch=16, options={"target_config": H100_TARGET_CONFIG, "topology": "1x1x8"},
        # A compile-only GPU has no autotuner, and Triton GEMM tiling then fails on small dots
        # ("Couldn't find output tile sizes"): plan with cuBLAS GEMMs.
        compiler_options={"xla_gpu_enable_triton_gemm": False}),
    "v5e-256": dict(
        platform="tpu", name="v5e:16x16", devices=256, memory_bytes=16 * GiB, mesh={"data": 16, "fsdp": 16, "tensor": 1},
        batch=256, options={"chip_config_name": "default", "chips_per_host_bounds": (2, 2, 1), "num_slices": 1}),
}

# Published config.json values (Hugging Face model cards), as data: no download.
MODELS = {
    "qwen2.5-7b": {
        "model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "max_position_embeddings": 131072, "tie_word_embeddings": False,
        "hidden_act": "silu", "use_sliding_window": False, "bos_token_id": 151643, "eos_token_id": 151643,
    },
    "llama-3.1-8b": {
        "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "max_position_embeddings": 131072, "tie_word_embeddings": False,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "bos_token_id": 128000,
        "eos_token_id": 128001,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
    },
}
