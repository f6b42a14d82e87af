host "local" {
  connection {
    transport = "telnet"
  }
}

backend "cpu" {
  runtime = "process"
}
