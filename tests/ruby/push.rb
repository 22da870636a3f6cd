# Pushes jobs with Ruby Sidekiq's own client: one now, one scheduled in the past (due at once).
require "sidekiq"

Sidekiq::Client.push("class" => "HardJob", "args" => [1, "from ruby"], "queue" => "default")
Sidekiq::Client.push("class" => "HardJob", "args" => [2, "scheduled"], "queue" => "default",
                     "at" => Time.now.to_f - 1)
