# Chat models share the GPUs of a host: one group, one member running at a time.
# `berth select --model llama3.1-8b` switches the group over.

model "qwen2.5-7b" {
  source   = "${var.models_dir}/qwen2.5-7b-instruct-q4_k_m.gguf"
  size_gib = 4.7
  host_policy {
    labels   = { tier = "gpu" }
    replicas = 2
  }
  backend_policy {
    prefer = ["cuda", "cpu"]
  }
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd         = "llama-server -m {source} --host 0.0.0.0 --port {port} --ctx-size 16384 {backend_args}"
    probe_http        = "/v1/models"
    probe_interval_ms = 1000
  }
  env     = { LLAMA_API_KEY = var.api_key }
  group   = "chat"
  default = true
}

model "llama3.1-8b" {
  source   = "${var.models_dir}/Meta-Llama-3.1-8B-Instruct-Q5_K_M.gguf"
  size_gib = 5.7
  host_policy {
    labels   = { tier = "gpu" }
    replicas = 2
  }
  backend_policy {
    prefer = ["cuda"]
  }
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd  = "llama-server -m {source} --host 0.0.0.0 --port {port} {backend_args}"
    probe_http = "/v1/models"
  }
  env   = { LLAMA_API_KEY = var.api_key }
  group = "chat"
}

# A large model split in three GGUF shards: its probe timeout is sized from all shards.
model "qwen2.5-72b" {
  source   = "${var.models_dir}/qwen2.5-72b-instruct-q4_k_m-00001-of-00003.gguf"
  size_gib = 44
  host_policy {
    hosts = ["gpu-a"]
  }
  backend_policy {
    prefer = ["cuda"]
  }
  runtime_defaults {
    port = 8090
  }
  enabled = false
  launch {
    start_cmd = "llama-server -m {source} --host 0.0.0.0 --port {port} {backend_args}"
  }
}

model "bge-m3" {
  source = "${var.models_dir}/bge-m3-q8_0.gguf"
  host_policy {
    hosts = ["cpu-*"]
  }
  backend_policy {
    prefer = ["cpu"]
  }
  runtime_defaults {
    port = 8100
  }
  launch {
    start_cmd = "llama-server -m {source} --embedding --host 0.0.0.0 --port {port} {backend_args}"
    probe_cmd = "curl -fsS http://127.0.0.1:{port}/health"
  }
}
