host "gpu-a" {
  connection {
    host     = "10.0.0.11"
    user     = "ops"
    host_key = "AAAAC3NzaC1lZDI1NTE5"
  }
  capabilities {
    backends = ["cpu"]
  }
}

backend "cpu" {
  runtime = "process"
}
