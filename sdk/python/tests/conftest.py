import os
import sys

# The SDK as a SuperNode gives it to apps: sdk/python on the path.
SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if SDK not in sys.path:
    sys.path.insert(0, SDK)
