module example.com/pkidtest-consumer

go 1.26.8

require github.com/pkid/pkid v0.0.0

replace github.com/pkid/pkid => ../..
