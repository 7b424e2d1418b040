// The user-assigned identity the function app runs as. One identity for the host
// storage, Event Hubs, the lake and Application Insights keeps the role assignments
// readable and lets them exist before the app does (no first-start race).

@description('Identity name.')
param name string

param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
