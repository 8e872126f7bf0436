import SpringCacheUV
print("springcache-uv: under construction")
