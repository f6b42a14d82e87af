host {
  connection {
    transport = "local"
  }
}

backend "cpu" {
  runtime = "process"
}
