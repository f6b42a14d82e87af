variable "models_dir" {
  default = "/srv/models"
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
  source = "${var.model_dir}/a.gguf"
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
