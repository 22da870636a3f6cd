# The job bodies of the side-by-side benchmark (bench/compare.py) for Ruby Sidekiq: the same
# bodies as compare_jobs.py, under the same class names, through one module-level client.
require "sidekiq"
require "redis"

# Debian pairs Sidekiq 6.4.1 with redis-rb 4.8, which warns on stderr at every BRPOP because
# Sidekiq passes its timeout positionally (two lines a fetch); silence it, as a deployment would.
Redis.silence_deprecations = true

# Logging off (BENCH_LOGLEVEL=warn): Sidekiq's job logger writes its start and done lines at
# INFO, so a WARN level drops them, as a deployment that does not want them sets it.
Sidekiq.logger.level = Logger::WARN if ENV["BENCH_LOGLEVEL"] == "warn"

# The application's client, one per process, shared by every thread: one connection that
# redis-rb serialises (Redis.new), or with BENCH_RUBY_CLIENT=pool a pool of one connection a
# thread behind the same interface, as redis-py's client is.
BENCH_REDIS =
  if ENV["BENCH_RUBY_CLIENT"] == "pool"
    ConnectionPool::Wrapper.new(size: 10) { Redis.new(url: ENV.fetch("BENCH_REDIS_URL")) }
  else
    Redis.new(url: ENV.fetch("BENCH_REDIS_URL"))
  end

class BenchIncr
  include Sidekiq::Worker

  # One INCR; the first and the last of total completions also push a mark.
  def perform(total)
    count = BENCH_REDIS.incr("bench:counter")
    BENCH_REDIS.rpush("bench:marks", "#{count} #{Time.now.to_f}") if count == 1 || count == total
    count
  end
end

class BenchProbe
  include Sidekiq::Worker

  def perform(sent_at)
    BENCH_REDIS.rpush("bench:latency", Time.now.to_f - sent_at)
  end
end
