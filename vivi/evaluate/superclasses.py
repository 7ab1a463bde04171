"""The ImageNet classes that make up each class of three benchmarks scored in a coarser label
space: ImageNet-Vid-Robust's 30 classes, YouTube-BB-Robust's 24 and the 16 categories of
the cue-conflict stimuli. A classifier over ImageNet's 1,000 classes ('imagenet2012': TFDS's
order, the devkit's synset order n01440764 ... n15075141) is scored there by pooling the
scores of each class's members (video_robustness.py: the maximum logit; shape_bias.py: the
mean softmax probability).

These are facts copied from the benchmarks' own files (sources beside each table), kept here
so that nothing is downloaded at run time; tests/evaluate/test_video_robustness.py and
test_shape_bias.py check their sizes against those files. An index is an ImageNet class
index in that label space.
"""

from __future__ import annotations

# --- ImageNet-Vid-Robust (Shankar et al. 2019, "Do image classifiers generalize across
# time?"): the 30 ImageNet-VID classes in the order of the release's
# misc/imagenet_vid_class_index.json ({"0": ["n02691156", "airplane"], ...}, the labels of
# metadata/labels.json), and their ImageNet members as the release's misc/rev_wnid_map.json
# lists them, in index form as in github.com/modestyachts/imagenet-testbed,
# src/eval_settings/imagenet-vid-robust_metadata/rev_class_idx_map.json.
VID_CLASSES = (
  ('n02691156', 'airplane'), ('n02419796', 'antelope'), ('n02131653', 'bear'),
  ('n02834778', 'bicycle'), ('n01503061', 'bird'), ('n02924116', 'bus'),
  ('n02958343', 'car'), ('n02402425', 'cattle'), ('n02084071', 'dog'),
  ('n02121808', 'domestic_cat'), ('n02503517', 'elephant'), ('n02118333', 'fox'),
  ('n02510455', 'giant_panda'), ('n02342885', 'hamster'), ('n02374451', 'horse'),
  ('n02129165', 'lion'), ('n01674464', 'lizard'), ('n02484322', 'monkey'),
  ('n03790512', 'motorcycle'), ('n02324045', 'rabbit'), ('n02509815', 'red_panda'),
  ('n02411705', 'sheep'), ('n01726692', 'snake'), ('n02355227', 'squirrel'),
  ('n02129604', 'tiger'), ('n04468005', 'train'), ('n01662784', 'turtle'),
  ('n04530566', 'watercraft'), ('n02062744', 'whale'), ('n02391049', 'zebra'),
)
VID_MEMBERS = (
  (404,),                                                  # airplane
  (*range(351, 354),),                                     # antelope
  (*range(294, 298),),                                     # bear
  (444, 671),                                              # bicycle
  (*range(7, 25), *range(80, 101), *range(127, 147)),      # bird
  (654, 779, 874),                                         # bus
  (407, 436, 468, 511, 609, 627, 656, 661, 751, 817),      # car
  (345,),                                                  # cattle
  (*range(151, 269),),                                     # dog
  (*range(281, 286),),                                     # domestic_cat
  (385, 386),                                              # elephant
  (*range(277, 281),),                                     # fox
  (388,),                                                  # giant_panda
  (333,),                                                  # hamster
  (339,),                                                  # horse
  (291,),                                                  # lion
  (*range(38, 49),),                                       # lizard
  (*range(370, 383),),                                     # monkey
  (665,),                                                  # motorcycle
  (330, 332),                                              # rabbit
  (387,),                                                  # red_panda
  (348,),                                                  # sheep
  (*range(52, 69),),                                       # snake
  (335,),                                                  # squirrel
  (292,),                                                  # tiger
  (466,),                                                  # train
  (*range(33, 38),),                                       # turtle
  (403, 472, 484, 510, 554, 576, 625, 628, 724, 780, 814, 833, 871, 913, 914),  # watercraft
  (147, 148),                                              # whale
  (340,),                                                  # zebra
)

# --- YouTube-BB-Robust (same paper): YouTube-BoundingBoxes' 24 classes in its own id order
# (ytbb_class_index.json), and their ImageNet members (rev_class_idx_map.json), both from
# github.com/modestyachts/imagenet-testbed, src/eval_settings/ytbb-robust_metadata/ (the
# same files as github.com/mlfoundations/wise-ft, src/datasets/ytbb-robust_metadata/). Five
# classes have no ImageNet member (cow, giraffe, skateboard, toilet, none): a classifier over
# ImageNet can never predict them, and the testbed scores them -inf.
YTBB_CLASSES = (
  'person', 'bird', 'bicycle', 'boat', 'bus', 'bear', 'cow', 'cat', 'giraffe',
  'potted plant', 'horse', 'motorcycle', 'knife', 'airplane', 'skateboard', 'train',
  'truck', 'zebra', 'toilet', 'dog', 'elephant', 'umbrella', 'none', 'car',
)
YTBB_MEMBERS = (
  (*range(981, 984),),                                     # person
  (*range(7, 25), *range(80, 101), *range(127, 147)),      # bird
  (444, 671),                                              # bicycle
  (472, 554, 576, 625, 814, 914),                          # boat
  (654, 779, 874),                                         # bus
  (*range(294, 298),),                                     # bear
  (),                                                      # cow
  (*range(281, 288),),                                     # cat
  (),                                                      # giraffe
  (985, 986),                                              # potted plant
  (339,),                                                  # horse
  (665,),                                                  # motorcycle
  (499, 623),                                              # knife
  (404,),                                                  # airplane
  (),                                                      # skateboard
  (466,),                                                  # train
  (555, 569, 675, 717, 734, 864, 867),                     # truck
  (340,),                                                  # zebra
  (),                                                      # toilet
  (*range(151, 269),),                                     # dog
  (385, 386),                                              # elephant
  (879,),                                                  # umbrella
  (),                                                      # none
  (407, 436, 468, 511, 609, 627, 656, 661, 751, 817),      # car
)

# --- The cue-conflict stimuli (Geirhos et al. 2019, "ImageNet-trained CNNs are biased
# towards texture"): the 16 entry-level categories in sorted order (as
# get_human_object_recognition_categories returns them) and the ImageNet indices of each,
# `<category>_indices` of HumanCategories in github.com/rgeirhos/texture-vs-shape,
# code/helper/human_categories.py. 207 of the 1,000 classes belong to one.
CUE_CONFLICT_MEMBERS = {
  'airplane': (404,),
  'bear': (294, 295, 296, 297),
  'bicycle': (444, 671),
  'bird': (8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 80, 81, 82, 83, 87, 88, 89,
           90, 91, 92, 93, 94, 95, 96, 98, 99, 100, 127, 128, 129, 130, 131, 132, 133, 135,
           136, 137, 138, 139, 140, 141, 142, 143, 144, 145),
  'boat': (472, 554, 625, 814, 914),
  'bottle': (440, 720, 737, 898, 899, 901, 907),
  'car': (436, 511, 817),
  'cat': (281, 282, 283, 284, 285, 286),
  'chair': (423, 559, 765, 857),
  'clock': (409, 530, 892),
  'dog': (152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168,
          169, 170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185,
          186, 187, 188, 189, 190, 191, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203,
          205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221,
          222, 223, 224, 225, 226, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
          240, 241, 243, 244, 245, 246, 247, 248, 249, 250, 252, 253, 254, 255, 256, 257, 259,
          261, 262, 263, 265, 266, 267, 268),
  'elephant': (385, 386),
  'keyboard': (508, 878),
  'knife': (499,),
  'oven': (766,),
  'truck': (555, 569, 656, 675, 717, 734, 864, 867),
}
CUE_CONFLICT_CATEGORIES = tuple(sorted(CUE_CONFLICT_MEMBERS))
