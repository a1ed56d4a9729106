"""The front panel: four push encoders, two buttons and a 128x64 OLED, plus MIDI learn, presets and
persisted settings. Hardware drivers (Jetson.GPIO, luma.oled) turn into the events and views here."""
