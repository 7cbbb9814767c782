defmodule Thunderbolt.Serving.ConfigTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.Serving.Config

  alias Thunderbolt.Error
  alias Thunderbolt.Serving.Config

  describe "new/1" do
    test "fills in defaults, with one runner per scheduler" do
      assert {:ok, config} = Config.new(name: M, model: {:binary, "bytes"})
      assert config.runners == System.schedulers_online()
      assert config.batch_timeout == 200
      assert config.distributed
    end

    test "requires a name and a model" do
      assert {:error, %Error{kind: :invalid_option, message: ":name is required"}} =
               Config.new(model: "m.onnx")

      assert {:error, %Error{message: ":model is required"}} = Config.new(name: M)
    end

    test "names the bad option and its value" do
      for {opts, message} <- [
            {[batch_size: -1], ":batch_size must be a positive integer, got: -1"},
            {[batch_timeout: 1.5], ":batch_timeout must be a non-negative integer, got: 1.5"},
            {[runners: :many], ":runners must be a positive integer, got: :many"},
            {[max_queue: 0], ":max_queue must be a positive integer, got: 0"},
            {[batch_size: 10 ** 30],
             ":batch_size must be at most 1000000, got: 1000000000000000000000000000000"},
            {[batch_timeout: 60_000_001],
             ":batch_timeout must be at most 60000000, got: 60000001"},
            {[runners: 100_000], ":runners must be at most 1024, got: 100000"},
            {[max_queue: 10 ** 8], ":max_queue must be at most 10000000, got: 100000000"},
            {[scheduler: :fast],
             ":scheduler must be one of [:auto, :normal, :dirty], got: :fast"},
            {[distributed: "yes"], ":distributed must be one of [true, false], got: \"yes\""},
            {[model: 42],
             ":model must be a path, {:binary, bytes} or a Thunderbolt.Session, got: 42"},
            {[load_options: [pool_size: 4]],
             ":load_options cannot set :pool_size: each runner owns a session of pool size 1"},
            {[load_options: :fast], ":load_options must be a keyword list, got: :fast"}
          ] do
        opts = Keyword.merge([name: M, model: "m.onnx"], opts)
        assert {:error, %Error{kind: :invalid_option, message: ^message}} = Config.new(opts)
      end
    end

    test "refuses unknown options and non-keyword input" do
      assert {:error, %Error{message: "unknown options [:batch]" <> _}} =
               Config.new(name: M, model: "m.onnx", batch: 3)

      assert {:error, %Error{message: "options must be a keyword list" <> _}} = Config.new(%{})
      assert {:error, %Error{message: "options must be a keyword list" <> _}} = Config.new([1, 2])
    end
  end
end
