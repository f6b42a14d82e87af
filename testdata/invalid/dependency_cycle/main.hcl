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
  depends_on = ["model.b"]
  runtime_defaults {
    port = 8080
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}

model "b" {
  source = "/srv/models/m.gguf"
  depends_on = ["model.c"]
  runtime_defaults {
    port = 8081
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}

model "c" {
  source = "/srv/models/m.gguf"
  depends_on = ["model.a"]
  runtime_defaults {
    port = 8082
  }
  launch {
    start_cmd = "srv --port {port}"
  }
}
