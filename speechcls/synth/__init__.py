"""Making data: the built-in synthetic sets (espeak-ng, the Kokoro neural voices, the channel simulation).
`speechcls.data` only reads what these write."""
