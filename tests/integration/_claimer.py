"""A claimer process for test_claims_multiprocess: launches COUNT machines in environment ENV, prints JSON."""

import json
import sys

from twisted.internet import defer, task

from ensemble_orchestra.provider import create_orchestra_provider
from ensemble_orchestra.schedule import Schedule


async def main(reactor, env: str, count: int, config_path: str) -> None:
    with open(config_path) as handle:
        raw = json.load(handle)
    provider = create_orchestra_provider(env, raw, reactor)
    provider.power.schedule = Schedule((0.1, 0.2, 0.5), timeout=60)
    try:
        machines = await provider.start_machines(
            [{"machine-id": str(i), "zookeeper-hosts": ["zk:2181"]} for i in range(count)]
        )
        print(json.dumps([[m.system_name, m.instance_id] for m in machines]), flush=True)
    finally:
        await provider.client.close()
        await provider.storage.close()


if __name__ == "__main__":
    env, count, config_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, env, count, config_path)))
