"""The file ``spark-submit`` runs for a Lotan job (``lotan entry`` prints its path):

spark-submit --master spark://HOST:7077 "$(lotan entry)" fit --config job.yaml
"""

import sys

from lotan.cli import main

if __name__ == "__main__":
    sys.exit(main())
