-- wrk script: POST the payload file as a GitHub delivery, every request with
-- a fresh X-GitHub-Delivery. The signature depends on the body only, so it is
-- computed once by the caller and passed in the environment. The request is
-- prebuilt around the id (wrk.format per request cost wrk ~8% of its rate,
-- and wrk is what limits the floor's figure).
local body = io.open(os.getenv("BENCH_PAYLOAD"), "rb"):read("*a")
local signature = os.getenv("BENCH_SIGNATURE")
local event = os.getenv("BENCH_EVENT")
local counter = 0
-- LuaJIT's generator starts from a fixed seed: wrk processes run side by
-- side (bench/run.sh's postgres×2) tell their ids apart by BENCH_TAG.
local thread_tag = (os.getenv("BENCH_TAG") or "") .. tostring(math.random(1, 1e9))
local head, tail

function init(args)
  head = "POST /webhook HTTP/1.1\r\n" ..
    "Host: " .. wrk.host .. ":" .. wrk.port .. "\r\n" ..
    "Content-Type: application/json\r\n" ..
    "X-GitHub-Event: " .. event .. "\r\n" ..
    "X-Hub-Signature-256: " .. signature .. "\r\n" ..
    "Content-Length: " .. #body .. "\r\n" ..
    "X-GitHub-Delivery: " .. thread_tag .. "-"
  tail = "\r\n\r\n" .. body
end

function request()
  counter = counter + 1
  return head .. counter .. tail
end
