"""The same preparation as `runner.run_local`, as an Apache Beam pipeline, for millions of
videos on a cluster (Dataflow, Flink, Spark; the DirectRunner by default).

Every video is one element: the per-video function (`prepare.prepare_video`) runs on the
workers, a GroupByKey collects each shard's videos, and the shard is written by the same
`runner.write_shard` the local runner uses, so both produce the same records for the same
plan. Finished shards are left out of the pipeline (restart = run again), and the manifest
is written by the launching process once the pipeline has finished.

Pipeline options pass through: e.g. `--beam_options='--runner=DataflowRunner
--project=P --region=R --temp_location=gs://B/tmp --setup_file=./setup.py'` (the workers
need this package; inputs and output on gs:// work because all file access is tf.io.gfile).
"""

from __future__ import annotations

from collections.abc import Sequence

from vivi.prep import prepare, runner


def run_beam(plan: runner.Plan, beam_args: Sequence[str] = ()):
  """Runs the unfinished shards of `plan` on Beam, then writes the manifest."""
  import apache_beam as beam
  from apache_beam.options.pipeline_options import PipelineOptions

  class PrepareVideo(beam.DoFn):

    def __init__(self, cfg: prepare.PrepConfig):
      self.cfg = cfg
      self.tools = None

    def setup(self):  # Once per worker: detector and classifier load from disk.
      self.tools = prepare.Workers(self.cfg)

    def process(self, element):
      k, index, item = element
      yield k, (index, prepare.prepare_video(item.path, item.video_id, self.cfg, self.tools,
                                             item.query))

  def write(element):
    k, indexed = element
    return runner.write_shard(plan, k, [r for _, r in sorted(indexed, key=lambda x: x[0])])

  elements = [(k, i, item) for k in plan.pending() for i, item in enumerate(plan.shards[k])]
  if elements:
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
      _ = (p
           | 'Videos' >> beam.Create(elements)
           | 'Spread' >> beam.Reshuffle()
           | 'Prepare' >> beam.ParDo(PrepareVideo(plan.config))
           | 'ByShard' >> beam.GroupByKey()
           | 'WriteShard' >> beam.Map(write))
  return runner.finalize(plan)
