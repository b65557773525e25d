import os
import warnings

import torch

# Keep the suite deterministic and light on a 2-core machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
warnings.filterwarnings("ignore", message="Computing zero point of output accumulator")
