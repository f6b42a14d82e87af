host "gpu-a" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cuda"]
  }
  run_dir = "/srv/berth"
}

host "gpu-b" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cuda"]
  }
  run_dir = "/srv/berth"
}

backend "cuda" {
  verify_cmd = "nvidia-smi -L"
  args       = ["--n-gpu-layers", "999"]
}

model "qwen2.5-7b" {
  source   = "/srv/models/qwen2.5-7b-instruct-q4_k_m.gguf"
  size_gib = 4.7
  host_policy {
    hosts = ["gpu-a"]
  }
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd  = "llama-server -m {source} --port {port} --ctx-size 8192 {backend_args}"
    probe_http = "/v1/models"
  }
}

model "llama3.1-8b" {
  source   = "/srv/models/llama-3.1-8b-instruct-q4_k_m.gguf"
  size_gib = 4.9
  host_policy {
    hosts = ["gpu-b"]
  }
  runtime_defaults {
    port = 8081
  }
  launch {
    start_cmd  = "llama-server -m {source} --port {port} --ctx-size 8192 {backend_args}"
    probe_http = "/v1/models"
  }
}
