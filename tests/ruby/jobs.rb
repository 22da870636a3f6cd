# Jobs the Ruby Sidekiq server runs in the compatibility tests.
require "sidekiq"

class RubyJob
  include Sidekiq::Worker

  def perform(a, b)
    Sidekiq.redis { |conn| conn.rpush("ruby:ran", "#{a}:#{b}") }
  end
end
