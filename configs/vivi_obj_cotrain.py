r"""VIVI + the object level, co-trained with labelled ImageNet images (Romijnders et al., §4.1).

  python main.py --config=configs/vivi_obj_cotrain.py --workdir=/tmp/vivi_obj_co \
      --config.data.dataset=/path/to/annotated_records --config.labelled.data_dir=/path/tfds

  Published values: configs/vivi_obj.py with GroupNorm + weight standardisation, 512
  videos and 2,048 ImageNet images per step, 100k steps, learning rate x0.1 after 70k, 85k
  and 95k; loss L + gamma * L_supervised (gamma not reported; 1.0 here). Expected: 69.4%
  mean VTAB-1k accuracy (Table 4, "Ours", ResNet-50; VIVI co-trained 69.0%).

Smoke run: python main.py --config=configs/vivi_obj_cotrain.py:tiny --workdir=/tmp/x
Variants as configs/vivi_obj.py ('tiny', and its ablations after a comma).
"""

from configs import vivi_cotrain, vivi_obj

# The TPU slice (benchmarks/aot.py): VIVI's, 128 TPU v3 cores; not named in the paper.
TPU_SLICE = 'v3:8x8'


def get_config(variant: str = ''):
  return vivi_cotrain.cotrain(vivi_obj.get_config(variant), variant)
