defmodule Thunderbolt.Native do
  @moduledoc false
  # Every NIF stub lives here. A stub named `session_run` is implemented in
  # native/thunderbolt_nif/src/session.rs, `builder_build` in builder.rs, etc.

  @on_load :load_nif

  def load_nif do
    path = :filename.join(:code.priv_dir(:thunderbolt), ~c"native/libthunderbolt_nif")
    :erlang.load_nif(path, 0)
  end

  defp err, do: :erlang.nif_error(:nif_not_loaded)

  # session.rs
  def session_load(_source, _options), do: err()
  def session_run(_session, _inputs, _outputs, _mode, _others_waiting), do: err()
  def session_run_dirty(_session, _inputs, _outputs), do: err()
  def session_estimated_run_us(_session, _bytes), do: err()
  def session_pool_size(_session), do: err()
  def runtime_info, do: err()

  # infer.rs
  def session_infer(_session, _inputs, _limit, _outputs, _top_k, _others_waiting), do: err()
  def session_infer_dirty(_session, _inputs, _limit, _outputs, _top_k), do: err()

  # file.rs
  def file_stamp(_path), do: err()

  # serving.rs
  def serving_new(_options), do: err()
  def serving_submit(_queue, _inputs, _outputs), do: err()
  def serving_cancel(_queue, _id), do: err()
  def serving_run(_queue, _session), do: err()
  def serving_run_dirty(_queue, _session), do: err()
  def serving_close(_queue, _reason), do: err()
  def serving_stats(_queue), do: err()

  # tensor.rs
  def tensor_from_nested(_data, _type), do: err()
  def tensor_from_nested_dirty(_data, _type), do: err()
  def tensor_to_list(_data, _type, _dims, _non_finite), do: err()
  def tensor_to_list_dirty(_data, _type, _dims, _non_finite), do: err()
  def tensor_all_finite(_data, _type), do: err()
  def tensor_top_k(_data, _type, _row_len, _k), do: err()
  def tensor_top_k_dirty(_data, _type, _row_len, _k), do: err()

  # builder.rs
  def builder_build(_spec), do: err()

  # keras.rs
  def keras_convert(_source, _options), do: err()
  def keras_parameter_count(_onnx), do: err()
end
