//! gemini: fixtures of the documented event sequence fed whole and in pieces, the simulator streaming it, cut streams. SKELETON: to be written.
