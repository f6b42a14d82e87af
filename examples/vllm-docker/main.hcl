# vLLM's OpenAI-compatible server in Docker on CUDA hosts reached over SSH. The image is pinned
# by digest (a tag would work too: berth resolves it to its digest on each host, and a tag that
# moves is drift), and air-gapped hosts load it from an archive copied there beforehand:
#
#   docker save -o vllm-openai-v0.8.5.tar vllm/vllm-openai@sha256:...   # on a connected machine
#   scp vllm-openai-v0.8.5.tar ops@10.0.0.11:/srv/images/              # to every host
#
# The hosts need the NVIDIA Container Toolkit (`berth hosts doctor` says so when it is missing).

settings {
  state_dir   = ".berth"
  parallelism = 8
}

variable "models_dir" {
  default     = "/srv/models"
  description = "Where the Hugging Face model directories live on every host"
}

variable "hf_token" {
  default     = ""
  sensitive   = true
  description = "HF_TOKEN for gated models; reaches the containers only through their 0600 env files"
}

variable "api_key" {
  default     = "change-me"
  sensitive   = true
  description = "VLLM_API_KEY: clients must send it as a bearer token"
}

host "gpu-a" {
  connection {
    host     = "10.0.0.11"
    user     = "ops"
    key_path = "~/.ssh/id_ed25519"
  }
  capabilities {
    backends = ["cuda"]
    gpus     = 2
    vram_gib = 160
  }
  run_dir = "/var/lib/berth"
}

host "gpu-b" {
  connection {
    host     = "10.0.0.12"
    user     = "ops"
    key_path = "~/.ssh/id_ed25519"
  }
  capabilities {
    backends = ["cuda"]
    gpus     = 2
    vram_gib = 160
  }
  run_dir = "/var/lib/berth"
}

backend "cuda" {
  runtime    = "docker"
  verify_cmd = "nvidia-smi -L"
  env        = { HF_TOKEN = var.hf_token, VLLM_API_KEY = var.api_key }
  container {
    # Pinned by digest: what runs can change only when this line does.
    image         = "vllm/vllm-openai@sha256:1a0b7e9c4f6d2e8b3c5a7d9f0e1b2c3d4e5f60718293a4b5c6d7e8f901a2b3c4"
    image_archive = "/srv/images/vllm-openai-v0.8.5.tar"
    gpus          = "all"
    volumes       = ["${var.models_dir}:/models:ro"]
    # Host networking (the default without `ports`): the server's port is the host's port.
    extra_args = ["--ipc=host", "--restart=on-failure:3"]
  }
}

model "qwen2.5-32b" {
  source   = "/models/Qwen2.5-32B-Instruct-AWQ"
  size_gib = 19
  host_policy {
    hosts    = ["gpu-*"]
    replicas = 2
  }
  runtime_defaults { port = 8000 }
  launch {
    # The container runs this with /bin/sh -c, so $VLLM_API_KEY comes from the env file and
    # never shows in `docker inspect` or `ps`.
    start_cmd         = "vllm serve {source} --served-model-name {model} --host 0.0.0.0 --port {port} --tensor-parallel-size 2 --api-key \"$VLLM_API_KEY\""
    probe_http        = "/health"
    probe_timeout_sec = 900
  }
}
