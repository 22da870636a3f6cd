# The Ruby ceiling of the side-by-side benchmark: like body_alone.py, 10 threads doing only
# BenchIncr's body (compare_jobs.rb, through its module-level client), with no job system.
#
#   ruby bench/body_alone.rb TOTAL [THREADS]
#
# Each thread waits for the go signal on a connection of its own (a BLPOP on the shared client
# would hold it for every thread), then runs the body until the counter reaches TOTAL.
require_relative "compare_jobs"

total = Integer(ARGV.fetch(0))
body = BenchIncr.new
threads = Array.new(Integer(ARGV.fetch(1, "10"))) do
  Thread.new do
    go = Redis.new(url: ENV.fetch("BENCH_REDIS_URL"))
    go.blpop("bench:go")
    go.close
    loop { break if body.perform(total) >= total }
  end
end
threads.each(&:join)
