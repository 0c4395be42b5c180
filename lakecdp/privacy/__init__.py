"""Privacy: consent decides who may be contacted, checked at the moment anything leaves."""
