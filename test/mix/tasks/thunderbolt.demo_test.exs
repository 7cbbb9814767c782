defmodule Mix.Tasks.Thunderbolt.DemoTest do
  # Swaps the Mix shell, which is global: not async.
  use ExUnit.Case, async: false

  alias Mix.Tasks.Thunderbolt.Demo

  setup do
    dir = Path.join(System.tmp_dir!(), "tb_demo_#{System.unique_integer([:positive])}")
    shell = Mix.shell()
    Mix.shell(Mix.Shell.Process)

    on_exit(fn ->
      Mix.shell(shell)
      File.rm_rf!(dir)
    end)

    %{dir: dir}
  end

  defp output do
    receive_all([]) |> Enum.join("\n")
  end

  defp receive_all(acc) do
    receive do
      {:mix_shell, :info, [line]} -> receive_all([line | acc])
    after
      0 -> Enum.reverse(acc)
    end
  end

  describe "run/1" do
    test "builds the model, runs both paths, and they agree", %{dir: dir} do
      assert Demo.run(["--iterations", "3", "--top-k", "4", "--model-dir", dir]) == :ok
      text = output()

      path = Path.join(dir, "cerebros_demo.onnx")
      session = Thunderbolt.load!(path)
      assert [%{name: "input_ids", type: {:s, 64}, shape: {nil, 40}}] = session.inputs
      assert [%{name: "logits", type: {:f, 32}, shape: {nil, 1000}}] = session.outputs

      assert text =~ "217832 parameters"
      assert text =~ "7 ms per inference"
      assert text =~ "65 ms per call"
      assert text =~ "Both paths give the same top 4: yes"
      assert length(Regex.scan(~r/top 4:(  #\d+ -?\d+\.\d{4}){4}/, text)) == 2
    end

    test "the seed decides the weights", %{dir: dir} do
      path = Path.join(dir, "cerebros_demo.onnx")
      Demo.run(["--iterations", "1", "--seed", "7", "--model-dir", dir])
      first = File.read!(path)
      Demo.run(["--iterations", "1", "--seed", "7", "--model-dir", dir])
      assert File.read!(path) == first
      Demo.run(["--iterations", "1", "--seed", "8", "--model-dir", dir])
      assert File.read!(path) != first
      output()
    end

    test "refuses bad arguments" do
      assert_raise Mix.Error, fn -> Demo.run(["--iterations", "0"]) end
      assert_raise Mix.Error, fn -> Demo.run(["extra"]) end
      assert_raise Mix.Error, fn -> Demo.run(["--colour"]) end
    end
  end
end
