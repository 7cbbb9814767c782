defmodule Thunderbolt.Serving.StatsTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.Serving.Stats

  alias Thunderbolt.Serving.Stats

  describe "snapshot/2" do
    test "starts at zero, with zero means rather than a division by zero" do
      snapshot = Stats.snapshot(Stats.new(), %{batches: 0, rows: 0, batched_requests: 0})
      assert snapshot.batches == 0
      assert snapshot.runners == 0
      assert snapshot.mean_batch_size == 0.0
      assert snapshot.mean_batch_requests == 0.0
    end

    test "counts runners from many processes at once" do
      stats = Stats.new()

      1..50
      |> Enum.map(fn _ ->
        Task.async(fn -> for _ <- 1..100, do: Stats.add(stats, :runner_crashes) end)
      end)
      |> Enum.each(&Task.await/1)

      assert Stats.snapshot(stats, %{}).runner_crashes == 5000
    end
  end

  describe "add/3 and put/3" do
    test "a gauge goes up and down" do
      stats = Stats.new()
      Stats.add(stats, :runners, 2)
      Stats.add(stats, :runners, -1)
      assert Stats.snapshot(stats, %{}).runners == 1
      Stats.put(stats, :runners, 0)
      assert Stats.snapshot(stats, %{}).runners == 0
    end
  end
end
