# llama.cpp on a fleet of CUDA hosts reached over SSH, with a CPU fallback host.

settings {
  state_dir   = ".berth"
  parallelism = 16
}

variable "models_dir" {
  default     = "/srv/models"
  description = "Where GGUF files live on every host"
}

variable "ssh_key" {
  default     = "~/.ssh/id_ed25519"
  description = "Private key berth authenticates with"
}

variable "api_key" {
  default     = "change-me"
  sensitive   = true
  description = "LLAMA_API_KEY handed to every llama-server"
}

host "gpu-a" {
  connection {
    host     = "10.0.0.11"
    user     = "ops"
    key_path = var.ssh_key
  }
  capabilities {
    backends = ["cuda", "cpu"]
    gpus     = 2
    vram_gib = 48
  }
  labels  = { rack = "r1", tier = "gpu" }
  run_dir = "/var/lib/berth"
}

host "gpu-b" {
  connection {
    host     = "10.0.0.12"
    user     = "ops"
    key_path = var.ssh_key
  }
  capabilities {
    backends = ["cuda", "cpu"]
    gpus     = 2
    vram_gib = 48
  }
  labels = { rack = "r2", tier = "gpu" }
}

host "cpu-a" {
  connection {
    host     = "10.0.0.21"
    user     = "ops"
    key_path = var.ssh_key
  }
  capabilities {
    backends = ["cpu"]
  }
  labels = { rack = "r1", tier = "cpu" }
}

backend "cuda" {
  runtime      = "process"
  host_filters = ["gpu-*"]
  verify_cmd   = "nvidia-smi -L && command -v llama-server"
  env          = { CUDA_VISIBLE_DEVICES = "0,1" }
  args         = ["--n-gpu-layers", "999", "--flash-attn"]
}

backend "cpu" {
  runtime    = "process"
  verify_cmd = "command -v llama-server"
  args       = ["--threads", "16"]
}
