# llama.cpp's llama-server as systemd units on CUDA hosts: each placement becomes
# `berth-<model>.service` in the system manager, restarted by systemd when it crashes
# (Restart=on-failure), logging to journald (`journalctl -u berth-qwen2.5-7b`), with its
# environment (the API key) in a mode-0600 EnvironmentFile under run_dir.
#
#   berth validate && berth plan && berth apply
#   berth hosts doctor      # systemd as PID 1, journald, unit directory, nvidia-smi

settings {
  state_dir   = ".berth"
  parallelism = 8
}

variable "models_dir" {
  default     = "/srv/models"
  description = "Where GGUF files live on every host"
}

variable "llama_server" {
  default     = "/usr/local/bin/llama-server"
  description = "llama.cpp's server binary on the hosts (systemd starts it with a minimal PATH)"
}

variable "api_key" {
  default     = "change-me"
  sensitive   = true
  description = "LLAMA_API_KEY of every llama-server (BERTH_VAR_api_key=... berth apply)"
}

host "gpu-a" {
  connection {
    host     = "10.0.0.21"
    user     = "root" # system units: root, or a login with passwordless sudo; `ops-units` is user scope
    key_path = "~/.ssh/id_ed25519"
  }
  capabilities {
    backends = ["cuda"]
    gpus     = 2
    vram_gib = 48
  }
  labels  = { tier = "gpu" }
  run_dir = "/var/lib/berth"
}

host "gpu-b" {
  connection {
    host     = "10.0.0.22"
    user     = "root"
    key_path = "~/.ssh/id_ed25519"
  }
  capabilities {
    backends = ["cuda"]
    gpus     = 2
    vram_gib = 48
  }
  labels  = { tier = "gpu" }
  run_dir = "/var/lib/berth"
}

host "gpu-c" {
  connection {
    host     = "10.0.0.23"
    user     = "ops" # no root here: units run in ops's own manager (loginctl enable-linger ops)
    key_path = "~/.ssh/id_ed25519"
  }
  capabilities {
    backends = ["cuda-user"]
    gpus     = 1
    vram_gib = 24
  }
  labels  = { tier = "gpu" }
  run_dir = "/home/ops/berth"
}

backend "cuda" {
  runtime      = "systemd"
  host_filters = ["gpu-a", "gpu-b"]
  verify_cmd   = "nvidia-smi -L"
  args         = ["--n-gpu-layers", "999", "--flash-attn"]
  env          = { CUDA_VISIBLE_DEVICES = "0,1" }
  systemd {
    options = {
      LimitMEMLOCK = "infinity" # lets --mlock pin the weights
      Nice         = "-5"
    }
  }
}

backend "cuda-user" {
  runtime      = "systemd"
  host_filters = ["gpu-c"]
  verify_cmd   = "nvidia-smi -L"
  args         = ["--n-gpu-layers", "999"]
  systemd {
    scope = "user"
  }
}

model "qwen2.5-7b" {
  source   = "${var.models_dir}/qwen2.5-7b-instruct-q4_k_m.gguf"
  size_gib = 4.7
  host_policy {
    labels   = { tier = "gpu" }
    replicas = 3
  }
  backend_policy {
    prefer = ["cuda", "cuda-user"]
  }
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd         = "${var.llama_server} -m {source} --host 0.0.0.0 --port {port} --ctx-size 16384 {backend_args}"
    probe_http        = "/health"
    probe_interval_ms = 1000
  }
  env = { LLAMA_API_KEY = var.api_key }
}

model "nomic-embed" {
  source   = "${var.models_dir}/nomic-embed-text-v1.5.Q8_0.gguf"
  size_gib = 0.15
  host_policy {
    hosts    = ["gpu-a", "gpu-b"]
    replicas = 2
  }
  backend_policy {
    prefer = ["cuda"]
  }
  runtime_defaults {
    port = 8090
  }
  launch {
    start_cmd  = "${var.llama_server} -m {source} --host 0.0.0.0 --port {port} --embedding {backend_args}"
    probe_http = "/health"
  }
  env = { LLAMA_API_KEY = var.api_key }
}
