variable "api_key" {
  sensitive   = true
  description = "LLAMA_API_KEY for every server"
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
  runtime = "process"
}

model "a" {
  source = "/srv/models/m.gguf"
  env = { LLAMA_API_KEY = var.api_key }
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
