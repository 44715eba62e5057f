"""wechatpy (PyPI) sending the bench's template message: what a Python backend does today.

Usage: python3 wechatpy_send.py BASE_URL TOKEN COUNT CONCURRENCY
Prints sends per second over COUNT sends, CONCURRENCY threads at a time, each thread with its
own client (a requests.Session keeps one connection alive per thread), after a warm-up.
"""

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from wechatpy import WeChatClient

OA_OPENID = "oOA0000000000000000000000001"


def client(base_url, token):
    class LocalClient(WeChatClient):
        API_BASE_URL = base_url + "/cgi-bin/"

    # The token handed in is kept as cached: no token fetch, as in the other sides' steady state.
    return LocalClient("wx0ac0a0c0a0c00002", "s", access_token=token)


def send(wechat):
    answer = wechat.message.send_template(
        OA_OPENID, "TPL_ORDER_SHIPPED", {"thing1": {"value": "Order shipped"}}
    )
    assert answer["errcode"] == 0, answer


def main():
    base_url, token, count, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    per_thread = count // concurrency
    clients = [client(base_url, token) for _ in range(concurrency)]

    def run(wechat, n):
        for _ in range(n):
            send(wechat)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(run, clients, [8] * concurrency))
        started = time.perf_counter()
        list(pool.map(run, clients, [per_thread] * concurrency))
        elapsed = time.perf_counter() - started
    print(f"{per_thread * concurrency / elapsed:.1f}")


if __name__ == "__main__":
    main()
