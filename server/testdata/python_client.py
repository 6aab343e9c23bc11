"""Drives kestrel-server with Python gRPC (Debian's python3-grpcio): a real
client nobody in this project wrote. Usage: python_client.py STUBS_DIR ADDRESS"""
import sys
import time

sys.path.insert(0, sys.argv[1])
address = sys.argv[2]

import grpc  # noqa: E402
from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from kestrel.v1 import generate_pb2, info_pb2, kestrel_pb2_grpc  # noqa: E402


def check(condition, message):
    if not condition:
        print("FAIL:", message)
        sys.exit(1)
    print("ok:", message)


channel = grpc.insecure_channel(address)
grpc.channel_ready_future(channel).result(timeout=30)
health = health_pb2_grpc.HealthStub(channel)
stub = kestrel_pb2_grpc.KestrelStub(channel)

status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
check(status == health_pb2.HealthCheckResponse.SERVING, "health is SERVING")

# Streaming generate: tokens arrive as chunks, then one finished event.
request = generate_pb2.GenerateRequest(text="hello kestrel")
request.sampling.temperature = 0.0
request.stopping.max_tokens = 12
request.stopping.ignore_eos = True
ids, text, finished = [], "", []
for event in stub.Generate(request, timeout=60):
    if event.HasField("chunk"):
        ids.extend(event.chunk.token_ids)
        text += event.chunk.text
    elif event.HasField("finished"):
        finished.append(event.finished)
check(len(ids) == 12, "streamed 12 tokens")
check(len(finished) == 1 and finished[0].reason == generate_pb2.FINISH_REASON_LENGTH,
      "finished with reason LENGTH")
check(finished[0].usage.completion_tokens == 12, "usage counts 12 completion tokens")
detok = stub.Detokenize(info_pb2.DetokenizeRequest(token_ids=ids), timeout=10)
check(detok.text == text, "streamed text equals Detokenize of the ids")

# Complete returns the same greedy result.
complete = stub.Complete(request, timeout=60)
check(list(complete.completions[0].token_ids) == ids, "Complete gives the same ids")

# Cancel a stream mid-way: the server stops it and returns its blocks.
long_request = generate_pb2.GenerateRequest(text="a long one")
# Far more than the 3 tokens read, within the demo model's 512-token context.
long_request.stopping.max_tokens = 400
long_request.stopping.ignore_eos = True
call = stub.Generate(long_request, timeout=60)
seen = 0
try:
    for event in call:
        if event.HasField("chunk"):
            seen += 1
            if seen == 3:
                call.cancel()
    check(False, "a cancelled stream should raise")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.CANCELLED, "cancelled stream ends CANCELLED")
deadline = time.time() + 10
load = None
while time.time() < deadline:
    load = stub.GetServerInfo(info_pb2.GetServerInfoRequest(), timeout=10).load
    if load.running_requests == 0 and load.kv_blocks_free == load.kv_blocks_total:
        break
    time.sleep(0.05)
check(load.running_requests == 0 and load.kv_blocks_free == load.kv_blocks_total,
      "every KV block is free after the cancel")

# A bad request gets INVALID_ARGUMENT naming the field.
bad = generate_pb2.GenerateRequest(text="x")
bad.sampling.top_p = 2.0
try:
    stub.Complete(bad, timeout=10)
    check(False, "top_p = 2 should be refused")
except grpc.RpcError as error:
    check(error.code() == grpc.StatusCode.INVALID_ARGUMENT and "top_p" in error.details(),
          "top_p = 2 is INVALID_ARGUMENT naming top_p")
print("python client: all checks passed")
