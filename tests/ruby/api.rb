# Reads forkq's keys through Ruby Sidekiq's API and prints what it sees as JSON.
require "json"
require "sidekiq"
require "sidekiq/api"

stats = Sidekiq::Stats.new
out = {
  "processes" => Sidekiq::ProcessSet.new.map do |p|
    { "identity" => p.identity, "busy" => p["busy"], "concurrency" => p["concurrency"],
      "queues" => p["queues"], "tag" => p["tag"], "quiet" => p.stopping?, "pid" => p["pid"] }
  end,
  "queues" => Sidekiq::Queue.all.map { |q| { "name" => q.name, "size" => q.size, "latency" => q.latency } },
  "queue_jobs" => Sidekiq::Queue.new("default").map { |j| { "jid" => j.jid, "klass" => j.klass, "args" => j.args } },
  "retries" => Sidekiq::RetrySet.new.map do |j|
    { "jid" => j.jid, "klass" => j.klass, "error_class" => j["error_class"], "retry_count" => j["retry_count"],
      "at" => j.at.to_f, "args" => j.args, "backtrace" => j.error_backtrace }
  end,
  "dead" => Sidekiq::DeadSet.new.map { |j| { "jid" => j.jid, "error_message" => j["error_message"] } },
  "workers" => Sidekiq::Workers.new.map do |_process, _tid, work|
    { "queue" => work["queue"], "jid" => Sidekiq::JobRecord.new(work["payload"]).jid, "run_at" => work["run_at"] }
  end,
  "stats" => { "processed" => stats.processed, "failed" => stats.failed, "enqueued" => stats.enqueued,
               "retry_size" => stats.retry_size, "dead_size" => stats.dead_size },
  "history" => Sidekiq::Stats::History.new(2).processed,
}
puts JSON.generate(out)
