print("wgpm")
