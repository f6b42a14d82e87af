host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
}

backend "cpu" {
  verify_cmd = "curl -fsS http://127.0.0.1:{port}/health"
}
