# Ruby Sidekiq's enqueue rates for bench/compare.py: ARGV[0] jobs in one push_bulk, then
# ARGV[1] jobs one perform_async each. Prints {"bulk": jobs/s, "single": jobs/s,
# "single_cpu_us": the process's CPU per perform_async} as JSON.
require "json"
require_relative "compare_jobs"

bulk_jobs = Integer(ARGV.fetch(0))
single_jobs = Integer(ARGV.fetch(1))
args = Array.new(bulk_jobs) { [bulk_jobs] }
Sidekiq.redis { |conn| conn.ping } # connect before the clock starts, as forkq's side does

started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
Sidekiq::Client.push_bulk("class" => BenchIncr, "args" => args)
bulk = bulk_jobs / (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)

started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
cpu_started = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
single_jobs.times { BenchIncr.perform_async(single_jobs) }
single = single_jobs / (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started)
single_cpu_us = (Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - cpu_started) /
                single_jobs * 1e6

puts JSON.generate("bulk" => bulk, "single" => single, "single_cpu_us" => single_cpu_us)
