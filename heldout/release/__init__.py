"""Getting the released archives: `archives` (names, addresses, MD5s, member selection; pure
Python), `http` (resumable streaming reads), `tar` (safe, streaming, selective extraction),
`download` (the two together, MD5 checked before anything appears) and `progress` (byte bars).
"""
