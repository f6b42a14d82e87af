# The quickstart: three model servers on this machine, run as plain processes.
#
# The servers are berth's stand-in (testdata/model-server), which speaks the HTTP of
# llama.cpp's llama-server (/health, /v1/models, /v1/chat/completions) without loading a model.
# Swap `server` for llama-server and the files in models/ for real GGUF files to serve real
# models.

settings {
  state_dir   = ".berth"
  parallelism = 4
}

variable "server" {
  default     = "berth-model-server"
  description = "The model server binary, found on PATH"
}

variable "load_secs" {
  default     = 1
  description = "How long the stand-in pretends to load a model"
}

host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
}

backend "cpu" {
  runtime    = "process"
  verify_cmd = "command -v ${var.server}"
}
