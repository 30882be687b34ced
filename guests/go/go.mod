module vmx.test/guests

go 1.19
