-- wrk script: POST the payload file as a GitHub delivery, every request with
-- a fresh X-GitHub-Delivery. The signature depends on the body only, so it is
-- computed once by the caller and passed in the environment.
local body = io.open(os.getenv("BENCH_PAYLOAD"), "rb"):read("*a")
local signature = os.getenv("BENCH_SIGNATURE")
local event = os.getenv("BENCH_EVENT")
local counter = 0
local thread_tag = tostring(math.random(1, 1e9))

function request()
  counter = counter + 1
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = event,
    ["X-GitHub-Delivery"] = thread_tag .. "-" .. counter,
    ["X-Hub-Signature-256"] = signature,
  }
  return wrk.format("POST", "/webhook", headers, body)
end
