-- wrk script of the post4k scenario: a 4 KiB POST body (the same bytes bench/run.py gives h2load)
wrk.method = "POST"
wrk.body = string.rep("x", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
