# The pyinfra side of benches/ssh/run.sh: the job `berth apply` does on an empty fleet, done the
# usual pyinfra way, with pyinfra's defaults. On every host: run the backend check (berth's
# verify_cmd), start each model server detached, then poll its /v1/models on the host's own
# loopback until it answers 200 (berth's probe gate). run.sh passes the job in BERTH_BENCH_JOB.
import json
import os

from pyinfra.operations import server

job = json.loads(os.environ["BERTH_BENCH_JOB"])
run_dir = "/srv/berth/pyinfra"

server.shell(name="Check the backend", commands=[f"test -x {job['model_server']}"])

for m in job["models"]:
    server.shell(
        name=f"Start {m['name']}",
        commands=[
            f"mkdir -p {run_dir} && nohup setsid {job['model_server']} --port {m['port']}"
            f" --model {m['name']} --load-secs {job['load_secs']}"
            f" >> {run_dir}/{m['name']}.log 2>&1 < /dev/null &"
        ],
    )

for m in job["models"]:
    server.shell(
        name=f"Wait for {m['name']}",
        commands=[
            f"until curl -fsS -o /dev/null --max-time 5 http://127.0.0.1:{m['port']}/v1/models;"
            f" do sleep {job['probe_delay']}; done"
        ],
    )
