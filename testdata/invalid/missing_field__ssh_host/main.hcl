host "gpu-a" {
  connection {
    user = "ops"
  }
  capabilities {
    backends = ["cpu"]
  }
}

backend "cpu" {
  runtime = "process"
}
