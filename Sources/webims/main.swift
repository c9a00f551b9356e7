import ArgumentParser
import SIPTransport
print("x")
