-- wrk script: POST a small chat completion; the customer and key come from the environment.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"model":"fc:bench/bench","messages":[{"role":"user","content":"Say hello"}],"max_tokens":64}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")
wrk.headers["FC-Customer"] = os.getenv("BENCH_CUSTOMER") or "bench-customer"
